"""Readers for every task file format: `load_split(spec, data_root, split)` -> examples + report.

Formats (one reader each; `TaskSpec.loader` picks it):

- GLUE TSV (`cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`, `qnli`, `rte`, `wnli`) and SciTail's
  `tsv_format` (`scitail`): one record per line, fields split on tabs only. Quotes are text, not
  quoting (MRPC and SST-2 hold unbalanced `"`), so no CSV parser is used; lines end at `\\n`
  only (a stray `\\r` inside a QQP question must not split it). Columns are found by header
  name; headerless files (CoLA train/dev, SciTail, a headerless QQP copy) get the
  format's fixed column names. A UTF-8 BOM (MRPC) is ignored.
- SNLI JSON lines (`snli`): gold label `-` (no annotator consensus) is dropped and counted.
- RACE (`race`): the official folder `<split>/{middle,high}/*.txt`, one JSON file per article
  with `article`, `questions`, `options` (4 each) and `answers` (A-D); one example per question.
- Story Cloze 2016 CSV (`story_cloze`): real CSV (quoted fields), header `InputStoryid, ...`.

Malformed records (wrong field count, undecodable bytes, bad JSON) are counted and listed
(file, line, why) in the `LoadReport`; they fail the load only when their share exceeds
`max_malformed_fraction`. Unknown labels, missing columns, duplicate ids and an empty split are
errors (`GptpipeError`, one line naming the file and line).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import GptpipeError
from .records import Collector, LoadReport, Malformed, parse_label, raw_lines
from .spec import Example, TaskSpec

RACE_LEVELS = ("middle", "high")
HOLDOUT_SALT = "gptpipe-holdout"


# --------------------------------------------------------------------------- TSV


@dataclass(frozen=True)
class TsvLayout:
    """Where a TSV format keeps its fields, by header name."""

    text: tuple[str, ...]  # text columns, in input order
    label: str  # label column (absent from hidden-label test files)
    ids: tuple[tuple[str, ...], ...] = ()  # id column groups, first complete one wins ("-"-joined)
    names: tuple[str, ...] = ()  # column names when the file has no header row


_INDEX = (("index",),)
TSV_LAYOUTS: dict[str, TsvLayout] = {
    "cola": TsvLayout(("sentence",), "label", _INDEX, ("source", "label", "mark", "sentence")),
    "sst2": TsvLayout(("sentence",), "label", _INDEX),
    "mrpc": TsvLayout(("#1 String", "#2 String"), "Quality", (("index",), ("#1 ID", "#2 ID"))),
    "stsb": TsvLayout(("sentence1", "sentence2"), "score", _INDEX),
    "qqp": TsvLayout(("question1", "question2"), "is_duplicate", (("id",),),
                     ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")),
    "mnli": TsvLayout(("sentence1", "sentence2"), "gold_label", _INDEX),  # also AX
    "qnli": TsvLayout(("question", "sentence"), "label", _INDEX),
    "rte": TsvLayout(("sentence1", "sentence2"), "label", _INDEX),
    "wnli": TsvLayout(("sentence1", "sentence2"), "label", _INDEX),
    "scitail": TsvLayout(("premise", "hypothesis"), "label", (),
                         ("premise", "hypothesis", "label")),
}


def _columns(first: list[str], layout: TsvLayout, path: Path, labelled: bool
             ) -> tuple[list[str], bool]:
    """The column names and whether line 1 is a header (it is when it names a text column)."""
    has_header = any(name in first for name in layout.text)
    if not has_header and not layout.names:
        raise GptpipeError(f"{path}:1: missing header (expected columns {', '.join(layout.text)})")
    columns = first if has_header else list(layout.names)
    needed = list(layout.text) + ([layout.label] if labelled else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise GptpipeError(
            f"{path}:1: missing column {missing[0]!r} (header has: {', '.join(columns)})"
        )
    return columns, has_header


def _read_tsv(path: Path, spec: TaskSpec, labelled: bool, out: Collector) -> Collector:
    layout = TSV_LAYOUTS[spec.loader]
    lines = raw_lines(path)
    first = next(lines, None)
    if first is None:
        return out
    try:
        columns, has_header = _columns(first[1].decode("utf-8").split("\t"), layout, path, labelled)
    except UnicodeDecodeError:
        raise GptpipeError(f"{path}:1: the first line is not UTF-8") from None
    col = {name: i for i, name in enumerate(columns)}
    text_at = [col[c] for c in layout.text]
    # Hidden-label files are keyed by their first id group only (GLUE's `index`) or else by row:
    # a GLUE submission row is matched by that index, which counts the file's rows.
    groups = layout.ids if labelled else layout.ids[:1]
    id_at = next(([col[c] for c in g] for g in groups if all(c in col for c in g)), None)
    label_at = col[layout.label] if labelled else None
    records = lines if has_header else _chain_first(first, lines)
    for n, raw in records:
        row_no = out.rows
        out.rows += 1
        try:
            fields = raw.decode("utf-8").split("\t")
        except UnicodeDecodeError as exc:
            out.bad(n, f"not UTF-8 at byte {exc.start}")
            continue
        if len(fields) != len(columns):
            out.bad(n, f"{len(fields)} tab-separated fields, expected {len(columns)}")
            continue
        label = None
        if label_at is not None:
            raw_label = fields[label_at].strip()
            if not raw_label:
                out.bad(n, f"empty {layout.label!r}")
                continue
            label = parse_label(raw_label, spec, f"{path}:{n}")
        ex_id = "-".join(fields[i].strip() for i in id_at) if id_at else str(row_no)
        # Outer whitespace carries no meaning (SST-2 sentences end in a space) but would become
        # tokens under byte-level BPE.
        texts = tuple(fields[i].strip() for i in text_at)
        out.add(Example(ex_id, texts, None, label), n)
    return out


def _chain_first(first: tuple[int, bytes], rest: Iterator[tuple[int, bytes]]
                 ) -> Iterator[tuple[int, bytes]]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- SNLI JSON lines


SNLI_NO_GOLD = "no_gold_label"  # dropped-rule name for SNLI's `-` gold labels


def _read_snli(path: Path, spec: TaskSpec, labelled: bool, out: Collector) -> Collector:
    for n, raw in raw_lines(path):
        out.rows += 1
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            out.bad(n, f"not a JSON object: {str(exc).splitlines()[0]}")
            continue
        if not isinstance(record, dict):
            out.bad(n, "not a JSON object")
            continue
        keys = ("pairID", "sentence1", "sentence2") + (("gold_label",) if labelled else ())
        missing = [k for k in keys if k not in record]
        if missing:
            raise GptpipeError(f"{path}:{n}: missing field {missing[0]!r}")
        label = None
        if labelled:
            if record["gold_label"] == "-":
                out.dropped[SNLI_NO_GOLD] += 1
                continue
            label = parse_label(str(record["gold_label"]), spec, f"{path}:{n}")
        texts = (str(record["sentence1"]).strip(), str(record["sentence2"]).strip())
        out.add(Example(str(record["pairID"]), texts, None, label), n)
    return out


# --------------------------------------------------------------------------- RACE


def _file_order(path: Path) -> tuple[int, int | str]:
    """Numeric file names (RACE's `1.txt`, `10.txt`) in numeric order, others after by name."""
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.name)


def _read_race(path: Path, spec: TaskSpec, labelled: bool, out: Collector) -> Collector:
    if not path.is_dir():
        raise GptpipeError(f"{path}: not a folder (RACE splits are folders of levels "
                           f"{', '.join(RACE_LEVELS)})")
    levels = [lv for lv in RACE_LEVELS if (path / lv).is_dir()]
    if not levels:
        raise GptpipeError(f"{path}: none of the level folders {', '.join(RACE_LEVELS)} found")
    for level in levels:
        for file in sorted((path / level).glob("*.txt"), key=_file_order):
            _race_file(file, level, spec, labelled, out)
    return out


def _race_file(file: Path, level: str, spec: TaskSpec, labelled: bool, out: Collector) -> None:
    try:
        record = json.loads(file.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        out.rows += 1
        out.bad(1, f"not a JSON article: {str(exc).splitlines()[0]}", file)
        return
    keys = ("article", "questions", "options") + (("answers",) if labelled else ())
    missing = [k for k in keys if not isinstance(record, dict) or k not in record]
    if missing:
        raise GptpipeError(f"{file}: missing field {missing[0]!r}")
    options, answers = record["options"], record.get("answers") or []
    for q, question in enumerate(record["questions"]):
        out.rows += 1
        choices = options[q] if q < len(options) else None
        if not isinstance(choices, list) or len(choices) != spec.n_choices:
            out.bad(q + 1, f"question {q + 1}: expected {spec.n_choices} options", file)
            continue
        if labelled and q >= len(answers):
            out.bad(q + 1, f"question {q + 1}: no answer", file)
            continue
        label = None
        if labelled:
            label = parse_label(str(answers[q]).strip(), spec, f"{file}: question {q + 1}")
        texts = (str(record["article"]).strip(), str(question).strip())
        ex = Example(f"{level}/{file.name}#{q}", texts, tuple(str(c).strip() for c in choices),
                     label, group=level)
        out.add(ex, q + 1)


# --------------------------------------------------------------------------- Story Cloze CSV


STORY_COLUMNS = ("InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3",
                 "InputSentence4", "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2")
STORY_LABEL = "AnswerRightEnding"


def _read_story_cloze(path: Path, spec: TaskSpec, labelled: bool, out: Collector) -> Collector:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return out
            needed = STORY_COLUMNS + ((STORY_LABEL,) if labelled else ())
            missing = [c for c in needed if c not in header]
            if missing:
                raise GptpipeError(f"{path}:1: missing column {missing[0]!r} "
                                   f"(header has: {', '.join(header)})")
            col = {name: i for i, name in enumerate(header)}
            for row in reader:
                _story_row(row, reader.line_num, col, len(header), spec, labelled, out)
    except UnicodeDecodeError as exc:
        raise GptpipeError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start} of a "
                           "read block)") from None
    except csv.Error as exc:
        raise GptpipeError(f"{path}: unreadable CSV: {exc}") from None
    return out


def _story_row(row: list[str], line: int, col: dict[str, int], width: int, spec: TaskSpec,
               labelled: bool, out: Collector) -> None:
    out.rows += 1
    if len(row) != width:
        out.bad(line, f"{len(row)} comma-separated fields, expected {width}")
        return
    label = None
    if labelled:
        label = parse_label(row[col[STORY_LABEL]].strip(), spec, f"{out.file}:{line}")
    # Context = the four story sentences, no question (paper §3.3 for Story Cloze).
    story = " ".join(row[col[f"InputSentence{i}"]].strip() for i in range(1, 5))
    choices = (row[col["RandomFifthSentenceQuiz1"]].strip(),
               row[col["RandomFifthSentenceQuiz2"]].strip())
    out.add(Example(row[col["InputStoryid"]].strip(), (story,), choices, label), line)


# --------------------------------------------------------------------------- entry points


Reader = Callable[[Path, TaskSpec, bool, Collector], Collector]
LOADERS: dict[str, Reader] = {
    **{name: _read_tsv for name in TSV_LAYOUTS},
    "snli": _read_snli,
    "race": _read_race,
    "story_cloze": _read_story_cloze,
}
MRPC_OTHER_SPLIT = "other_split"  # dropped-rule name: MRPC rows that belong to the other split


def _mrpc_dev_ids(path: Path) -> set[str]:
    """GLUE's MRPC dev split: `#1 ID<TAB>#2 ID` pairs, no header."""
    if not path.is_file():
        raise GptpipeError(f"{path}: MRPC dev id list not found (GLUE's mrpc_dev_ids.tsv)")
    ids = set()
    for n, raw in raw_lines(path):
        parts = raw.decode("utf-8", "replace").split("\t")
        if len(parts) != 2:
            raise GptpipeError(f"{path}:{n}: expected '#1 ID<TAB>#2 ID'")
        ids.add(f"{parts[0].strip()}-{parts[1].strip()}")
    return ids


def _mrpc_keep(dev_ids: set[str], split: str, out_of: Counter) -> Callable[[Example], bool]:
    """Keep the rows of `split` as GLUE defines it (the others are counted in `out_of`).
    Applied to the raw MSRP train file it yields GLUE's train/dev; applied to GLUE's own
    train.tsv/dev.tsv it changes nothing."""
    want_dev = split == "dev"
    out_of[MRPC_OTHER_SPLIT] += 0  # reported even when nothing is dropped

    def keep(ex: Example) -> bool:
        if (ex.id in dev_ids) == want_dev:
            return True
        out_of[MRPC_OTHER_SPLIT] += 1
        return False

    return keep


def _check(out: Collector, max_malformed_fraction: float) -> None:
    if out.malformed and len(out.malformed) > max_malformed_fraction * out.rows:
        first = out.malformed[0]
        raise GptpipeError(
            f"{first.file}:{first.line}: {len(out.malformed)} of {out.rows} records malformed "
            f"(more than {max_malformed_fraction:.4%}); first: {first.why}"
        )
    if not out.kept:
        raise GptpipeError(f"{out.file}: no examples in this split ({out.rows} records read)")


def load_split(spec: TaskSpec, data_root: str | Path, split: str, *,
               max_malformed_fraction: float = 0.001,
               keep: Callable[[Example], bool] | None = None, limit: int = 0,
               rank: Callable[[str], bytes] | None = None,
               ) -> tuple[list[Example], LoadReport]:
    """Read `split` of `spec` from `data_root/<data_dir>/<files[split]>`.

    Labels are read for every split except `spec.unlabelled_splits` (hidden-label test sets,
    whose examples get `label=None` even where the file has a label column, as MRPC's raw test
    file does). `max_malformed_fraction`: malformed records / records read above which the load
    fails (0.001 tolerates the QQP subset's one bad row in 23,497).

    The file is streamed: `keep` selects examples as they are read (those it refuses are
    neither counted nor held: a held-out id set, say), and `limit` > 0 keeps only the `limit`
    with the smallest `rank(id)`, in file order, so a cap never holds the whole file in memory.
    The report's `kept` counts the examples before the limit (after `keep`).
    """
    if limit > 0 and rank is None:
        raise ValueError("load_split: a limit needs a rank")
    path = spec.path(data_root, split)
    out = _read(spec, data_root, split, Collector(path, limit=limit, rank=rank),
                max_malformed_fraction, keep)
    report = LoadReport(str(path), out.rows, out.kept, tuple(out.malformed), dict(out.dropped))
    return out.examples, report


def split_ids(spec: TaskSpec, data_root: str | Path, split: str, *,
              max_malformed_fraction: float = 0.001) -> tuple[list[str], LoadReport]:
    """The ids of `split`'s examples in file order (and the load report), holding no texts:
    what a holdout needs to choose its examples before the split is read for them."""
    path = spec.path(data_root, split)
    out = _read(spec, data_root, split, Collector(path, ids_only=True), max_malformed_fraction,
                None)
    report = LoadReport(str(path), out.rows, out.kept, tuple(out.malformed), dict(out.dropped))
    return out.ids, report


def _read(spec: TaskSpec, data_root: str | Path, split: str, out: Collector,
          max_malformed_fraction: float, keep: Callable[[Example], bool] | None) -> Collector:
    path = out.file
    if not path.exists():
        raise GptpipeError(f"{path}: task {spec.name} split {split!r} not found")
    rules = []
    if spec.loader == "mrpc" and split in ("train", "dev"):
        dev_ids = _mrpc_dev_ids(spec.aux_path(data_root, "dev_ids"))
        rules.append(_mrpc_keep(dev_ids, split, out.dropped))
    if rules or keep is not None:
        total = [0]

        def passes(ex: Example) -> bool:
            if not all(rule(ex) for rule in rules):
                return False
            total[0] += 1
            return keep is None or keep(ex)

        out.keep = passes
    LOADERS[spec.loader](path, spec, split not in spec.unlabelled_splits, out)
    out.finish()
    if keep is None:
        _check(out, max_malformed_fraction)
    else:
        kept, out.kept = out.kept, total[0]  # the split's size decides the checks
        _check(out, max_malformed_fraction)
        out.kept = kept
    return out


def held_ids(ids: Sequence[str], fraction: float, *, salt: str = HOLDOUT_SALT) -> set[str]:
    """The `round(fraction * len(ids))` ids with the smallest sha256(salt, id): held out."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    n_held = round(fraction * len(ids))

    def key(ex_id: str) -> bytes:
        return hashlib.sha256(f"{salt}\0{ex_id}".encode("utf-8")).digest()

    return set(sorted(ids, key=key)[:n_held])


def holdout(examples: Sequence[Example], fraction: float, *, salt: str = HOLDOUT_SALT
            ) -> tuple[list[Example], list[Example]]:
    """Split examples deterministically into (rest, held_out), each in the input order.

    The `round(fraction * n)` examples with the smallest sha256(salt, id) are held out, so the
    split depends only on the ids and the salt (not on file order or a RNG): e.g. train on part
    of a dev file where a sample has no train split, or Story Cloze's 1,497 / 374 of val.
    """
    held = held_ids([ex.id for ex in examples], fraction, salt=salt)
    return ([ex for ex in examples if ex.id not in held],
            [ex for ex in examples if ex.id in held])


__all__ = ["LOADERS", "TSV_LAYOUTS", "LoadReport", "Malformed", "TsvLayout", "held_ids",
           "holdout", "load_split", "split_ids"]
